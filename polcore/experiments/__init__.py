"""One module per paper section: `run(profile, device=...) -> Result`, through the result store."""
