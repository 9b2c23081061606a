"""One page per pipeline stage, in order (see ``studio.gui.pages.registry.PAGE_CLASSES``)."""
