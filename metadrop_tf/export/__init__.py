"""Adapt-and-predict SavedModels, their serving (REST API and page), the figures' data and plots."""
