"""The field side of a site: Modbus instruments behind a data logger, simulated, and Telegraf configs to poll them.

`registers` documents what each instrument kind exposes, `layout` wires a registry device's points onto instruments
and registers, `scenario` and `modbus_sim` play a site over Modbus TCP, `telegraf` writes configs that poll it.
"""
