"""Storage: the only package that knows SQLModel rows; functions take a Session."""
