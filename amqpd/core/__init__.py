"""The routing core: no sockets, no asyncio."""
