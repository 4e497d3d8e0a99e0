"""End-to-end tests of krun under real container engines (marked `engines`)."""
