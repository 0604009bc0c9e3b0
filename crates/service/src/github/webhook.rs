//! What GitHub sends, read without I/O: signatures, payloads, commands.
