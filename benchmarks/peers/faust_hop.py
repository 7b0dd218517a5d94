"""The normalize hop as a faust-streaming agent: Kafka to Kafka, one worker, the same validation and serialization.

Each record is validated against the catalog's TrackDocument and written back as its JSON, keyed by track id,
exactly the work `normalize` does on a track upsert; the agent reads its events in batches (`stream.take`) and
hands their outputs to the producer without waiting for each. Run as its own process:

    TF_FAUST_BOOTSTRAP=127.0.0.1:9092 TF_FAUST_INPUT=raw TF_FAUST_OUTPUT=out TF_FAUST_GROUP=g \\
    TF_FAUST_DATADIR=/tmp/faust python -m benchmarks.peers.faust_hop worker -l warn --without-web
"""

from __future__ import annotations

import os

import faust

from streams.catalog.models import TrackDocument

_validate = TrackDocument.__pydantic_validator__.validate_json
_to_json = TrackDocument.__pydantic_serializer__.to_json
TAKE, WITHIN_S = 500, 0.05

app = faust.App(
    os.environ.get("TF_FAUST_GROUP", "tf-faust-hop"),
    broker=f"kafka://{os.environ.get('TF_FAUST_BOOTSTRAP', '127.0.0.1:9092')}",
    datadir=os.environ.get("TF_FAUST_DATADIR", "/tmp/tf-faust"),
    key_serializer="raw",
    value_serializer="raw",
    topic_partitions=1,
    web_enabled=False,
    producer_acks=-1,
    broker_max_poll_records=10_000,
    consumer_max_fetch_size=8 * 1024 * 1024,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(os.environ.get("TF_FAUST_INPUT", "raw"), key_type=bytes, value_type=bytes)
output = app.topic(os.environ.get("TF_FAUST_OUTPUT", "out"), key_type=bytes, value_type=bytes)


@app.agent(source)
async def hop(stream: faust.StreamT[bytes]) -> None:
    async for values in stream.take(TAKE, within=WITHIN_S):
        for value in values:
            document = _validate(value)
            output.send_soon(key=str(document.id).encode(), value=_to_json(document, by_alias=True))


if __name__ == "__main__":
    app.main()
