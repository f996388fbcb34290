"""The sshca.azure lab: test hosts (Podman containers) and, later, the Azure emulator."""
