"""Code both the API and the workers use: settings, the sweep spec, storage, enqueueing."""
