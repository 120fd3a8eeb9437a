"""HTTP and WebSocket routes, one module per concern: reads, streams, ad-hoc scans, predictions."""
