"""The Local setting's transport (paper section IV): client and server on one host over IPC.

The same session store and engine as the HTTP server, in a separate process, reached over
a Unix domain socket. A message is a 4-byte big-endian length and then JSON:
request ``{"op": "create"|"infer"|"close"|"health", "session_id": str, "body": {...}}``,
answer ``{"status": 200|4xx, "body": <protocol model or ErrorResponse>}``. No HTTP, no
injected delay.
"""

from __future__ import annotations

import asyncio
import json
import struct

from pydantic import ValidationError

from streammuse.serving.protocol import CreateSessionRequest, ErrorResponse, InferRequest
from streammuse.serving.sessions import ApiError, SessionStore

HEADER = struct.Struct(">I")
MAX_MESSAGE_BYTES = 1 << 20


async def read_message(reader: asyncio.StreamReader) -> dict | None:
    """One length-prefixed JSON message, or None at end of stream."""
    try:
        (length,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    except asyncio.IncompleteReadError:
        return None
    if length > MAX_MESSAGE_BYTES:
        raise ApiError(413, "too_large", f"message over {MAX_MESSAGE_BYTES} bytes")
    return json.loads(await reader.readexactly(length))


def encode_message(message: dict) -> bytes:
    """``message`` as length-prefixed JSON."""
    data = json.dumps(message).encode()
    return HEADER.pack(len(data)) + data


async def handle(store: SessionStore, message: dict) -> dict:
    """Answer one request message with the store (errors as ErrorResponse bodies)."""
    try:
        op = message.get("op")
        if op == "health":
            return {"status": 200, "body": {"status": "ok"}}
        if op == "create":
            return {"status": 200, "body": store.create(CreateSessionRequest.model_validate(message.get("body", {}))).model_dump()}
        session_id = str(message.get("session_id", ""))
        if op == "infer":
            response = await store.infer(session_id, InferRequest.model_validate(message.get("body", {})))
            return {"status": 200, "body": response.model_dump()}
        if op == "close":
            store.close(session_id)
            return {"status": 204, "body": None}
        raise ApiError(400, "bad_request", f"unknown op {op!r}")
    except ApiError as exc:
        return {"status": exc.status, "body": ErrorResponse(code=exc.code, detail=exc.detail).model_dump()}
    except ValidationError as exc:
        first = exc.errors()[0]
        detail = f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
        return {"status": 422, "body": ErrorResponse(code="bad_request", detail=detail).model_dump()}


async def serve_forever(socket_path: str, store: SessionStore, ready=None) -> None:
    """Serve ``store`` on the Unix socket ``socket_path`` until cancelled."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    message = await read_message(reader)
                except (ApiError, ValueError) as exc:
                    writer.write(encode_message({"status": 400, "body": ErrorResponse(code="bad_request", detail=str(exc)).model_dump()}))
                    break
                if message is None:
                    break
                # One connection carries one request at a time; a client that overlaps
                # requests (and so can supersede) opens more connections.
                writer.write(encode_message(await handle(store, message)))
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_unix_server(client, path=socket_path, limit=MAX_MESSAGE_BYTES + HEADER.size)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def run_server(socket_path: str, checkpoint: str | None = None, random_weights: bool = False, ready=None) -> None:
    """Process entry point: load the engine and serve on ``socket_path``."""
    from streammuse.model.engine import StreamingEngine

    engine = StreamingEngine.random("tiny", seed=0) if random_weights else StreamingEngine.load(checkpoint)
    asyncio.run(serve_forever(socket_path, SessionStore(engine), ready))


def main(argv: list[str] | None = None) -> None:
    """``python -m streammuse.serving.ipc SOCKET [--checkpoint DIR] [--random-weights] [--threads N]``."""
    import argparse

    import torch

    parser = argparse.ArgumentParser(description="StreamMUSE IPC server (the Local setting)")
    parser.add_argument("socket_path")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        run_server(args.socket_path, args.checkpoint, args.random_weights)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
