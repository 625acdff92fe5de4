"""rama_http.client: the HTTP client (work in progress)."""

__all__: list[str] = []
