"""RetailRocket raw data: file formats, validation, loading, the synthetic twin and preparation."""
