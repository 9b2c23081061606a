"""The Re-enact page's fast modes and live driving (new widgets; the page hooks them in)."""
