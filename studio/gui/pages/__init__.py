"""One page per pipeline stage, in order; ``studio.gui.main_window.PAGE_CLASSES`` lists them."""
