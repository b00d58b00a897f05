"""PROVISIONAL: replaced by the field catalogue (issue 3)."""
CATALOGUE_VERSION = "provisional"
CATEGORIES = ("billing", "compliance", "operational", "product_analytics")
CONTRACT_CATEGORIES = ("billing", "compliance")
OPTIONAL_CATEGORIES = ("operational", "product_analytics")
