"""Signed webhooks: a job's end, POSTed to the client's URL (Standard Webhooks).

``targets`` checks a URL (and refuses server-side request forgery), ``signing``
signs a message, ``http`` sends one POST to a checked address, and ``events``
keeps one sealed event per job end until it is delivered or its window is over.
"""
