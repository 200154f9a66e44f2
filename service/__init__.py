"""lcw-sweep service: study store, REST API, web view and statistics (never imports torch)."""
