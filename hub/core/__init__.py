"""The hub's core: storage, plugins, ingest, queue and (later) WhatsApp and sending."""
