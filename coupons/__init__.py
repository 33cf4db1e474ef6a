"""Coupons dropped live and giveaways drawn fairly during a broadcast."""
