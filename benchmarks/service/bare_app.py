"""The baseline of the service benchmark: a bare async endpoint returning a constant list.

The list has the shape of a personalised answer with k=10, so JSON encoding costs the same.
Run it with the same uvicorn settings as the service: ``uvicorn bare_app:app``.
"""

from fastapi import FastAPI

app = FastAPI()
ANSWER = {
    "user_id": 1,
    "k": 10,
    "items": [{"item_id": 100_000 + i, "score": 1.0 / (i + 1), "source": "ranked"} for i in range(10)],
    "sources": ["ranked"],
    "fallbacks": [],
}


@app.get("/recommendations/users/{user_id}")
async def constant(user_id: int) -> dict[str, object]:
    return ANSWER
