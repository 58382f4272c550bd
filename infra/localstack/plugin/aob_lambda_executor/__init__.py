"""AOB Lambda executor plug-in for LocalStack."""
