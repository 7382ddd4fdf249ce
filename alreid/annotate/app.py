"""The web app of ``alreid annotate``: a JSON API over a :class:`Session` and one plain HTML/JS page.

Images are served by image id only; no client input ever becomes a file path. With a token every
request must carry it (header ``X-Alreid-Token``, ``Authorization: Bearer``, ``?token=`` or the cookie
the page gets when opened with ``?token=``), otherwise the answer is 401.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from alreid.annotate.session import Session, SessionError

STATIC = Path(__file__).with_name("static")
COOKIE = "alreid_token"


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pair_id: int
    answer: str
    annotator: str = "anonymous"
    seconds: Optional[float] = Field(None, ge=0)
    withdraw: list[int] = Field(default_factory=list)


class AnnotatorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    annotator: str = "anonymous"


def create_app(session: Session, *, token: str | None = None) -> FastAPI:
    """The FastAPI app; ``token`` (if given) is required on every request."""
    app = FastAPI(title="alreid annotate", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def require_token(request: Request, call_next: Any) -> Response:
        if token is None:
            return await call_next(request)
        auth = request.headers.get("authorization", "")
        given = (request.headers.get("x-alreid-token") or (auth[7:] if auth.lower().startswith("bearer ") else None)
                 or request.query_params.get("token") or request.cookies.get(COOKIE) or "")
        if not secrets.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"error": "unauthorized", "message": "this server needs its access token: open the "
                                 "URL it printed (…/?token=…) or send the X-Alreid-Token header"}, status_code=401)
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(SessionError)
    async def session_error(_request: Request, exc: SessionError) -> JSONResponse:
        return JSONResponse({"error": type(exc).__name__, "message": str(exc), **exc.detail}, status_code=exc.status)

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"),
                            headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}")
    def static(name: str) -> FileResponse:
        files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
        if name not in files:
            raise SessionError(f"no static file {name!r}", 404)
        return FileResponse(files[name], headers={"Cache-Control": "no-store"})

    @app.get("/api/status")
    def status() -> dict[str, Any]:
        return session.status()

    @app.get("/api/next")
    def next_pair(annotator: str = "anonymous") -> dict[str, Any]:
        out = session.next_pair(annotator)
        out["status"] = session.status()
        return out

    @app.post("/api/answer")
    def answer(body: AnswerIn) -> dict[str, Any]:
        out = session.answer(body.pair_id, body.answer, body.annotator, seconds=body.seconds, withdraw=body.withdraw)
        out["status"] = session.status()
        return out

    @app.post("/api/undo")
    def undo(body: AnnotatorIn) -> dict[str, Any]:
        out = session.undo(body.annotator)
        out["status"] = session.status()
        return out

    @app.post("/api/release")
    def release(body: AnnotatorIn) -> dict[str, Any]:
        session.release(body.annotator)
        return session.status()

    @app.post("/api/next-cycle")
    def next_cycle() -> dict[str, Any]:
        return session.next_cycle()

    @app.get("/api/answers")
    def answers() -> list[dict[str, Any]]:
        return session.answers_view()

    @app.get("/api/image/{image_id:path}")
    def image(image_id: str) -> FileResponse:
        return FileResponse(session.image_file(image_id))

    return app
