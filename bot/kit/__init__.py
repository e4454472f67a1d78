"""Utilities with no project imports: images, i18n, logs, metrics."""
