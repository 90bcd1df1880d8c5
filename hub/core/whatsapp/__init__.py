"""WhatsApp Cloud API and Coexistence: webhook, normalization, Graph client, onboarding."""
