"""Code both the API and the workers use: settings, the sweep file format, storage, enqueueing."""
