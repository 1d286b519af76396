"""Differential-privacy accounting shared by devices, the server and the auditor."""
