"""The platform: stream definitions, deployment properties, releases and their deployment."""
