"""What partners read: cross-service views, vacant houses with transport access, statistics.

Every read of personal data here goes through the consent decision point first.
"""
