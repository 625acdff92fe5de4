"""The FastAPI app every server in tools/bench/bench_asgi.sh serves.

``GET /json``: one small JSON answer; ``WS /ws``: echoes each message back.
"""

from __future__ import annotations

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

__all__ = ["app"]

app = FastAPI()


@app.get("/json")
async def json_route() -> dict[str, object]:
    """The benchmarked route."""
    return {"message": "hello", "n": 1}


@app.websocket("/ws")
async def ws_echo(ws: WebSocket) -> None:
    """Echo every message (text or bytes)."""
    await ws.accept()
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await ws.send_text(message["text"])
            else:
                await ws.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass
