"""The base layer every Lambda image carries: configuration, auth, connection store, sender, protocol."""
