"""HTTP API: create_app(settings), lifespan, deps, one router per resource, error mapping."""
