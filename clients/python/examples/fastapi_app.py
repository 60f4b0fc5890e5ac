"""A FastAPI backend that publishes to the dashboard gateway on an HTTP request.

    pip install ./clients/python fastapi uvicorn
    REDIS_URL=redis://127.0.0.1:6379 uvicorn fastapi_app:app --port 9000
    curl -X POST localhost:9000/alerts -H 'content-type: application/json' \
         -d '{"tutor_id": "t-17", "severity": "critical", "message": "No-show"}'

Every dashboard on every gateway node gets the alert; the answer carries its id.
"""

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict

from fastapi import FastAPI, HTTPException

from dashboard_gateway import AsyncPublisher, EventTooLargeError, RedisUnavailableError

publisher = AsyncPublisher.from_env()  # REDIS_URL, CHANNEL_PREFIX, ...; no I/O yet


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await publisher.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/alerts", status_code=202)
async def raise_alert(alert: Dict[str, Any]) -> Dict[str, str]:
    try:
        return {"id": await publisher.alert(alert)}
    except EventTooLargeError as err:
        raise HTTPException(413, str(err)) from err
    except RedisUnavailableError as err:
        raise HTTPException(503, str(err)) from err


@app.get("/dashboards")
async def dashboards() -> Dict[str, int]:
    return {"active_connections": await publisher.connection_count()}
