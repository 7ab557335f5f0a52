"""Who may do what, from where: roles, the client IP and maintainer networks."""
