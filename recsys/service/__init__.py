"""The recommendation service's logic, kept out of the web layer.

``fast_api_service/recsys_app`` is a thin FastAPI shell: it validates requests and calls
:class:`recsys.service.service.RecommendationService`, which answers from the in-memory
:mod:`~recsys.service.store` (published tables loaded as compact arrays), blends them with
item-to-item recommendations computed from the user's online events
(:mod:`~recsys.service.events`, :mod:`~recsys.service.blending`) and counts what it does in
the Prometheus metrics of :mod:`~recsys.service.metrics`.
"""
