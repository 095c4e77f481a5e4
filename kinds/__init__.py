"""Project kinds."""
