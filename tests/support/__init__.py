"""Test helpers shared by several test modules (real local servers, not mocks)."""
