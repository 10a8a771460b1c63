// Where your wxauth server is: an HTTPS domain registered as a "request legal domain"
// (and "uploadFile legal domain") in the mini-program admin console.
module.exports = { baseUrl: 'https://api.example.com' };
