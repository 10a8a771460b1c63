// Where your wxauth server is. In production: an HTTPS domain registered as a "request legal
// domain" (and "uploadFile legal domain") in the mini-program admin console.
// While developing: `make run HOST=0.0.0.0` on your computer, and its LAN address here, e.g.
// 'http://192.168.1.20:5000' (DevTools does not check domains for this project: urlCheck is
// off in project.config.json; on a phone, turn on 开发调试 from the mini-program's ··· menu).
module.exports = { baseUrl: 'https://api.example.com' };
