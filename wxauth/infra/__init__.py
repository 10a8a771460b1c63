"""Infrastructure: the shared store (Redis or in-process), session_key encryption at rest,
media storage and image processing, database tuning."""
