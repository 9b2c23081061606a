"""Jobs shared by the CLI and the GUI: each takes a Project, options, progress and cancel."""
