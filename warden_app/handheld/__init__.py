"""The warden's offline handheld web app (/warden/): a PWA speaking the sync protocol."""
