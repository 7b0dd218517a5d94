"""The `http` source's machinery: the ASGI app, authentication, limits, the hand-over to the runner, metrics.

The ASGI stack is Starlette on uvicorn (httptools parser). Both are maintained by the Encode team, are the most used
Python ASGI pair (FastAPI stands on them), release often, and stay thin: Starlette gives routing with 404/405
and a raw body stream, so the body is counted as it arrives (413 before the rest is read), signed bytes are the
bytes received, and validation is our own `check_change`, not a framework's second copy. uvicorn runs on its own
thread and event loop beside the batch loop, on a socket bound before anything starts; its protocol class is small
enough to extend with a header deadline, a header-size cap and a lingering close, which it lacks. FastAPI was left
out because it would validate bodies by its own path; Granian (Rust) runs its own runtime and workers, where this
source needs the server as one thread beside the runner, in the process that owns the producer; Hypercorn is less
used and slower than uvicorn on httptools.
"""
