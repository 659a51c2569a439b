"""Shared test support: real services (PostgreSQL, RabbitMQ) and a loopback TCP proxy."""
