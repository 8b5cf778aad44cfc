"""Components added the way a user adds one: each in one file with its registrations (see test_registries)."""
