"""Sans-IO AMQP 0-9-1 codec: bytes in, frames out, and back. Never touches a socket."""
