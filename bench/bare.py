"""The reference: a bare Flask JSON endpoint, served by the same gunicorn as wxauth."""

from flask import Flask

app = Flask(__name__)


@app.get("/json")
def json_endpoint():
    return {"ok": True}
