"""Settings, the local MongoDB server, stores, indexes and bundled data access."""
