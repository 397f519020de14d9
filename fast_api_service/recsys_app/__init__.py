"""The FastAPI shell of the recommendation service; the logic is in :mod:`recsys.service`."""
