"""Screens of the app: the run explorer, the run picker, the new-run form and the modals."""
