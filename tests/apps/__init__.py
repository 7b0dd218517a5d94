"""Apps that exist for tests only, registered by URI (`python:tests.apps.<module>:<class>`) as a user's would be."""
