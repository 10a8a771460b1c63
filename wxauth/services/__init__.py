"""Domain logic: the login transaction, the login state (JWT), the profile, the configured
mini-programs. No request, ``g`` or ``current_user`` here: callers pass what they parsed."""
