include $(sort $(wildcard $(BR2_EXTERNAL_CARTABLE_PATH)/package/*/*.mk))
