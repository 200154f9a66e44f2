"""Queue <-> Ray adapter: claims trials from the store, runs them on Ray, streams metrics back."""
