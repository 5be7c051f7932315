"""systemd unit templates for the pool, the factory and the frontend (written by `updraft deploy systemd`)."""
