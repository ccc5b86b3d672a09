"""licenseflow: Software License Management as Prefect flows."""
